"""Floor 2 of longconv_edu: experiments on the rungs (data, models, training, experiments, benchmark, plots)."""
