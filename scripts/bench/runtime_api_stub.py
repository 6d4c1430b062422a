"""A stand-in for the Lambda Runtime API that measures init time.

For each run it starts a bootstrap with AWS_LAMBDA_RUNTIME_API pointing here
and records the time from process start to its first
`GET /2018-06-01/runtime/invocation/next`: that is the function's init
(config read, clients built). The process is then stopped.

usage: runtime_api_stub.py RUNS NAME=PATH [NAME=PATH ...]
Prints one line per binary: size, median and p90 init time.
"""

import http.server
import os
import signal
import socketserver
import statistics
import subprocess
import sys
import threading
import time

first_poll = threading.Event()


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith("/runtime/invocation/next"):
            first_poll.set()
            # Never answer: the measurement is over once the function asks.
            time.sleep(5)
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args):
        pass


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True


def measure(path, env, runs):
    times = []
    for _ in range(runs):
        first_poll.clear()
        start = time.perf_counter()
        proc = subprocess.Popen([path], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not first_poll.wait(timeout=10):
            proc.kill()
            raise SystemExit(f"{path} never polled the runtime API")
        times.append((time.perf_counter() - start) * 1000)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    return times


def main():
    runs = int(sys.argv[1])
    server = Server(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ)
    env.update({
        "AWS_LAMBDA_RUNTIME_API": f"127.0.0.1:{server.server_address[1]}",
        "AWS_LAMBDA_FUNCTION_NAME": "coldstart",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "256",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "WHATSAPP_APP_SECRET": "s", "WHATSAPP_VERIFY_TOKEN": "t", "WHATSAPP_ACCESS_TOKEN": "a",
        "GRAPH_API_BASE_URL": "https://graph.facebook.com",
    })
    # The first binary is the baseline (the hello-world one): each median
    # is also printed as a ratio to its median, measured in the same run.
    print(f"{'binary':<18}{'size':>12}{'init median':>14}{'init p90':>11}{'vs first':>10}   ({runs} runs each; target <= 2.00x)")
    baseline = None
    for spec in sys.argv[2:]:
        name, path = spec.split("=", 1)
        times = sorted(measure(path, env, runs))
        median = statistics.median(times)
        baseline = baseline or median
        p90 = times[min(len(times) - 1, int(len(times) * 0.9))]
        size = os.path.getsize(path)
        print(f"{name:<18}{size:>10,} B{median:>11.2f} ms{p90:>8.2f} ms{median / baseline:>9.2f}x")


if __name__ == "__main__":
    main()
