"""Devices that Telegraf's edge-agent examples poll, on 127.0.0.1: an Eco-devices teleinfo gateway and a myStrom
switch (HTTP JSON, as the seeds show them) and a Modbus TCP gateway answering register reads."""

from __future__ import annotations

import json
import socketserver
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

# seed 002's reading, and a myStrom /report
ECODEVICES_READING = {
    "product": "Eco-devices",
    "T1_PTEC": "TH..",
    "T1_PAPP": 130,
    "T1_BASE": 1875395,
    "T2_PTEC": "----",
    "T2_PAPP": 0,
    "T2_BASE": 0,
    "INDEX_C1": 784482,
    "INDEX_C2": 10818,
}
MYSTROM_REPORT = {"power": 12.3, "Ws": 11.9, "relay": True, "temperature": 22.6, "boot_id": "3F9A2C1B"}


class _JsonDevices(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path.startswith("/api/xdevices.json"):
            body = ECODEVICES_READING
        elif self.path == "/report":
            body = MYSTROM_REPORT
        else:
            self.send_error(404)
            return
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass


def register_value(unit: int, address: int) -> int:
    """What the fake Modbus gateway holds: a value derived from the unit and the address."""
    return (unit * 1000 + address) & 0xFFFF


class _ModbusTcp(socketserver.BaseRequestHandler):
    """Function codes 3 (holding) and 4 (input registers) of Modbus TCP, nothing else."""

    def handle(self) -> None:
        while True:
            header = self._read(7)
            if header is None:
                return
            transaction, _, length, unit = struct.unpack(">HHHB", header)
            pdu = self._read(length - 1)
            if pdu is None:
                return
            function, start, count = struct.unpack(">BHH", pdu[:5])
            if function in (3, 4):
                registers = b"".join(struct.pack(">H", register_value(unit, start + i)) for i in range(count))
                reply = struct.pack(">BB", function, len(registers)) + registers
            else:
                reply = struct.pack(">BB", function | 0x80, 1)  # illegal function
            self.request.sendall(struct.pack(">HHHB", transaction, 0, len(reply) + 1, unit) + reply)

    def _read(self, size: int) -> bytes | None:
        data = b""
        while len(data) < size:
            chunk = self.request.recv(size - len(data))
            if not chunk:
                return None
            data += chunk
        return data


class _ThreadingTcp(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class FakeDevices:
    """Both servers on free ports: `http_url` (Eco-devices and myStrom) and `modbus_url`."""

    def __init__(self) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _JsonDevices)
        self._modbus = _ThreadingTcp(("127.0.0.1", 0), _ModbusTcp)
        self.http_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.modbus_url = f"tcp://127.0.0.1:{self._modbus.server_address[1]}"

    def __enter__(self) -> FakeDevices:
        for server in (self._http, self._modbus):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for server in (self._http, self._modbus):
            server.shutdown()
            server.server_close()
