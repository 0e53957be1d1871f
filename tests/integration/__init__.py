"""Real parts on loopback: sinks, the proxy, Locust, the control API, the CLI as a process."""
