"""Generated gRPC stubs (metavec_pb2, metavec_pb2_grpc), built from proto/ at install time."""
