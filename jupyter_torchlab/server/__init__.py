"""The jupyter_server extension: one sampler per server, served over REST, WebSocket and Prometheus."""
