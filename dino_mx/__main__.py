"""``python -m dino_mx``: the ``dino-mx`` command, for environments without its console script.

python -m dino_mx train +experiment=smoke
python -m dino_mx demo
"""

import sys

from dino_mx.cli import main

if __name__ == "__main__":
    sys.exit(main())
