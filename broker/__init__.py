"""The one owner of Kafka: client construction from Settings and the embedded Tansu broker."""
