"""The HTTP gateway: Prometheus Alertmanager webhooks and generic JSON events in, agent events out.

One module per job:

* ``config``: the gateway's versioned config file (sources, routes, limits, delivery) and loading it;
* ``matchers``: Alertmanager-style label matchers (``=``, ``!=``, ``=~``, ``!~``);
* ``routing``: routes (matchers → agent ids, event type and severity mapping), first match wins;
* ``alertmanager``: the webhook payload (version 4) and its conversion to ``SystemEvent``;
* ``auth``: per-source bearer tokens and HMAC-SHA256 signatures;
* ``ratelimit``: a token bucket per source;
* ``reload``: watching the config file and swapping in a valid new version;
* ``delivery``: the only way out, through ``aiops.client.AiopsClient.events``;
* ``metrics``: the gateway's Prometheus metrics;
* ``app``: the Starlette application (``/v1/alertmanager``, ``/v1/events``, health, metrics);
* ``server``: running it on uvicorn.

See docs/gateway.md.
"""
