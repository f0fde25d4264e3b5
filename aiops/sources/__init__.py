"""Event sources and sinks besides the HTTP gateway: Redis Streams in (a consumer group delivering to
agents through the gateway's routing and delivery) and out (the audit log published as a stream).
See docs/redis.md."""
