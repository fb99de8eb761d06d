"""Re-draw the pictures the top-level README shows, from the library's own plotting functions.

    python course/figures/make_figures.py

squash_smooth.png: rung 6's explorer picture (``widgets.explorer_state`` + ``explorer_figure``):
a noisy kernel before and after Smooth (width 7) then Squash (lam = 0.003), and both spectra.
"""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

from longconv_edu.course import widgets  # noqa: E402

HERE = Path(__file__).resolve().parent


def main() -> None:
    state = widgets.explorer_state("noisy random", L=1024, noise=0.002, lam=0.003, width=7, seed=0)
    fig = widgets.explorer_figure(state)
    out = HERE / "squash_smooth.png"
    fig.savefig(out, dpi=80)
    print(f"wrote {out} ({out.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
