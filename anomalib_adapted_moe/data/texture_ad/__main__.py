"""``python -m anomalib_adapted_moe.data.texture_ad --check ROOT [--category cloth]``: validate a downloaded copy."""

import sys

from anomalib_adapted_moe.data.texture_ad.check import main

if __name__ == "__main__":
    sys.exit(main())
