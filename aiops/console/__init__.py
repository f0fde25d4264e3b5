"""The approver's web console (docs/console.md), served by the API's process under ``/console``.

* ``session``: the signed cookies (session, sign-in flow) and the CSRF token;
* ``oidc``: sign-in with the identity provider, authorization code with PKCE (Authlib's client);
* ``views``: what the pages show, read from an ``ActionRecord``;
* ``app``: the layer in front of the REST API (pages, the session for ``/v1``, security headers);
* ``pages``: the pages themselves (Jinja2 templates, one static script for the passkey ceremonies).
"""
