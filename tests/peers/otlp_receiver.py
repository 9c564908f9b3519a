"""An OTLP trace receiver for tests: accepts OTLP/HTTP (protobuf, POST /v1/traces) and
OTLP/gRPC (TraceService/Export), decoding with the official opentelemetry-proto package,
and lists every span it got as JSON on GET /spans.

usage: otlp_receiver.py HTTP_PORT GRPC_PORT
"""

import json
import sys
import threading
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc

HTTP_PORT = int(sys.argv[1])
GRPC_PORT = int(sys.argv[2])
lock = threading.Lock()
spans = []


def keep(request, transport):
    with lock:
        for rs in request.resource_spans:
            service = ""
            for attr in rs.resource.attributes:
                if attr.key == "service.name":
                    service = attr.value.string_value
            for ss in rs.scope_spans:
                for s in ss.spans:
                    spans.append({
                        "name": s.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "kind": s.kind,
                        "service": service,
                        "transport": transport,
                        "attributes": {a.key: a.value.string_value for a in s.attributes},
                    })


class Traces(trace_service_pb2_grpc.TraceServiceServicer):
    def Export(self, request, context):
        keep(request, "grpc")
        return trace_service_pb2.ExportTraceServiceResponse()


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        if self.path != "/v1/traces":
            self.send_response(404)
            self.end_headers()
            return
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        keep(request, "http")
        out = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def do_GET(self):
        with lock:
            data = json.dumps(spans).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, fmt, *args):
        pass


if __name__ == "__main__":
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
    server.add_insecure_port(f"127.0.0.1:{GRPC_PORT}")
    server.start()
    ThreadingHTTPServer(("127.0.0.1", HTTP_PORT), Handler).serve_forever()
