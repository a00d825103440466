"""``python -m querit_st.cli``: the same as the ``querit-st`` command."""

import sys

from querit_st.cli import main

sys.exit(main())
