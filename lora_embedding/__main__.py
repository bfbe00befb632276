"""Allow ``python -m lora_embedding``."""

import sys

from .cli import main

sys.exit(main())
