"""The jupyter_server extension: one sampler per server, served over REST, WS and Prometheus."""
