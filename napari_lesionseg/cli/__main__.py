"""`python -m napari_lesionseg.cli` (and `torchrun -m napari_lesionseg.cli`) runs `lesionseg`."""

import sys

from napari_lesionseg.cli import main

sys.exit(main())
