"""nbgrader configuration for the tritonlab course (used by `tritonlab grade` and by hand).

The autograde step runs notebooks with tritonlab's ``ExecuteWithCheckpoints``: every autograded test cell that
calls ``grade("<checkpoint>")`` is re-judged outside the learner's kernel, so what the kernel prints or patches
cannot change the grade. Feedback hides the hidden tests' source. TRITONLAB_CELL_TIMEOUT sets the per-cell
limit in seconds (default 120).
"""

import os

from tritonlab.grading.nbgrader import configure

c = get_config()  # noqa: F821  (injected by nbgrader)
configure(c, cell_timeout=int(os.environ.get("TRITONLAB_CELL_TIMEOUT", "120")))
