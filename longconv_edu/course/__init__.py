"""Floor 3 of longconv_edu: what a learner touches (exercises, widgets, animations)."""
