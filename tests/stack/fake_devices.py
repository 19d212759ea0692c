"""Devices that Telegraf's edge-agent examples poll, on 127.0.0.1: an Eco-devices teleinfo gateway and a myStrom
switch (HTTP JSON, as the seeds show them) and a Modbus TCP gateway (pymodbus's server, the whole protocol)."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

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
    """What the Modbus gateway holds, in holding and input registers alike: a value from the unit and the address."""
    return (unit * 1000 + address) & 0xFFFF


MODBUS_UNITS = (1, 2)  # telegraf/edge/modbus.conf's slave ids
MODBUS_REGISTERS = 16


class _ModbusGateway:
    """pymodbus's Modbus TCP server (its simulator datastore), on a free port, in a thread with its own event loop."""

    def __init__(self) -> None:
        devices = [
            SimDevice(
                id=unit,
                simdata=[
                    SimData(
                        0,
                        values=[register_value(unit, address) for address in range(MODBUS_REGISTERS)],
                        datatype=DataType.REGISTERS,
                    )
                ],
            )
            for unit in MODBUS_UNITS
        ]
        self._loop = asyncio.new_event_loop()
        self._listening = threading.Event()
        self._server: ModbusTcpServer | None = None
        self._devices = devices
        self._thread = threading.Thread(target=self._loop.run_until_complete, args=(self._serve(),), daemon=True)
        self.port = 0

    async def _serve(self) -> None:
        self._server = ModbusTcpServer(self._devices, address=("127.0.0.1", 0))
        serving = asyncio.ensure_future(self._server.serve_forever())
        while self._server.transport is None and not serving.done():
            await asyncio.sleep(0.01)
        listener = self._server.transport
        if isinstance(listener, asyncio.Server):
            self.port = listener.sockets[0].getsockname()[1]
        self._listening.set()
        await serving

    def start(self) -> None:
        self._thread.start()
        if not self._listening.wait(10) or not self.port:
            raise RuntimeError("pymodbus's Modbus TCP server did not start listening within 10 s")

    def stop(self) -> None:
        if self._server is not None:
            asyncio.run_coroutine_threadsafe(self._server.shutdown(), self._loop).result(10)
        self._thread.join(10)
        self._loop.close()


class FakeDevices:
    """Both servers on free ports: `http_url` (Eco-devices and myStrom) and `modbus_url`."""

    def __init__(self) -> None:
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _JsonDevices)
        self._modbus = _ModbusGateway()
        self.http_url = f"http://127.0.0.1:{self._http.server_address[1]}"
        self.modbus_url = ""

    def __enter__(self) -> FakeDevices:
        threading.Thread(target=self._http.serve_forever, daemon=True).start()
        self._modbus.start()
        self.modbus_url = f"tcp://127.0.0.1:{self._modbus.port}"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._modbus.stop()
