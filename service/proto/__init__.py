"""The wire formats both data paths speak: the generated protobuf modules (`remote_pb2`: Prometheus remote
write 1.0; `push_pb2`: Loki's logproto push) and the hand-written wire helpers (`wire`)."""
