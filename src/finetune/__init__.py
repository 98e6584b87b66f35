"""Library code shared by the pipeline's stages: one module per concern."""

import os

# TensorFlow prints start-up banners on stderr at import time; keep stage logs readable
# unless the user asked for them.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
