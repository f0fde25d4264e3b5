"""Everything ``ActionWorkflow`` is made of: the workflow shell (``workflow.py``), the components
it delegates to, sharing one ``ActionContext`` (``approvals``, ``approval_wait``, ``holds``,
``execution``), what it publishes (``publishing``, ``details``, ``notices``, ``audit``) and the
approval gate. Its messages are declared in ``aiops.contracts.action`` (``ActionMessages``)."""
