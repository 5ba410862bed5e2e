"""trackflow: collect behavioural events over HTTP or Kafka, process them in stages, store them."""

__version__ = "0.1.0"
__all__ = ["__version__"]
