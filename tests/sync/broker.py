"""The test broker is the benchmarks' (``cartos.bench.broker``): one launcher for both."""

from cartos.bench.broker import HOST, Broker, BrokerError, find_mosquitto, free_port

__all__ = ["HOST", "Broker", "BrokerError", "find_mosquitto", "free_port"]
