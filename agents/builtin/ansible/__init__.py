"""The ``ansible`` agent: a playbook in check/diff mode finds drift; the approved run fixes it.

It runs one playbook (``settings.playbook``) through PyPI ``ansible-runner`` and
``ansible-core``:

- **detect**: ``ansible-playbook --check --diff``; any task that would change is drift.
  The event id derives from the digest of the rendered diff, so the same drift is one event.
- **plan**: the same check run; the diff (per host and task) is the evidence, headed by its sha256.
- **execute**: checks again and refuses (non-retryable) unless the pending diff is exactly
  the approved one; then runs the playbook for real. The action ledger under
  ``<private_data_dir>/ledger`` makes a retry after a crash return the first outcome instead of
  running the playbook again (``agents.reviewed_change``).
- **verify**: a second check run must show nothing left to change and no failure.
- **rollback**: runs ``settings.rollback_playbook`` when one is configured, once per action.

Modules: ``settings`` (what may be configured), ``playbook`` (one ansible-runner run and what it
changed) and ``agent`` (the hooks).
"""

from agents.builtin.ansible.agent import AnsibleAgent
from agents.builtin.ansible.playbook import PlaybookRun, render_diff
from agents.builtin.ansible.settings import AnsibleSettings

__all__ = ["AnsibleAgent", "AnsibleSettings", "PlaybookRun", "render_diff"]
