"""Settings for the whole pytest run, notebooks included (their kernels inherit the environment).

CNNLIB_SMALL=1 selects the notebooks' small mode (fewer samples and epochs), as in CI.
"""

import os

os.environ.setdefault("CNNLIB_SMALL", "1")
