"""The `precision_recall` metric for `evaluate.load` (a package only so that it ships with smart_hf)."""
