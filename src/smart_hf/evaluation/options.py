"""The metrics, feature spaces and defaults of `smart-hf evaluate`, shared with the library's functions.

Free of torch and of the other evaluation modules, so that the command line builds its parser without
importing them.
"""

# Fréchet-distance metrics and their feature space; "pr" (precision/recall) works in any of them.
FRECHET_METRICS = {"fd_digits": "digits", "fd_dinov2": "dinov2", "fid": "inception"}
METRICS = (*FRECHET_METRICS, "pr")
FEATURE_SPACES = ("digits", "dinov2", "inception")
# Generated images for a Fréchet distance when not told otherwise (the FID convention is >= 10k).
DEFAULT_NUM_SAMPLES = 10_000
# The neighbour whose distance sets a point's ball in precision/recall (the paper's k).
DEFAULT_K = 3
DEFAULT_DINOV2_MODEL = "facebook/dinov2-large"
