"""A raw HTTP/1.1 server for the tests of kept-alive connections (`shared.keepalive`)."""

from __future__ import annotations

import socket
import threading


class RawServer:
    """A socket server that answers every request 202 and counts connections and requests.

    `close_after_answer`: close each connection right after answering, without a
    `Connection: close` header, as a server does when its keep-alive timer fires.
    `announce_close`: answer with `Connection: close` (and close).
    `answers`: the raw answers to send, one per request in turn, each with whether to
    close the connection after it (then the 202 again).
    """

    def __init__(self, close_after_answer: bool = False, announce_close: bool = False,
                 answers: list[tuple[bytes, bool]] | None = None):
        self.close_after_answer = close_after_answer
        self.announce_close = announce_close
        self.answers = list(answers or [])
        self.connections = 0
        self.requests = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}/path?x=1"
        self.paths: list[str] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, client.makefile("rb") as reader:
            while True:
                request_line = reader.readline()
                if not request_line:
                    return
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.lower() == "content-length":
                        length = int(value)
                reader.read(length)
                self.requests += 1
                self.paths.append(request_line.split()[1].decode())
                if self.answers:
                    answer, close = self.answers.pop(0)
                    client.sendall(answer)
                    if close:
                        client.shutdown(socket.SHUT_RDWR)
                        return
                    continue
                close_header = "Connection: close\r\n" if self.announce_close else ""
                client.sendall(f"HTTP/1.1 202 Accepted\r\n{close_header}Content-Length: 0\r\n\r\n"
                               .encode())
                if self.close_after_answer or self.announce_close:
                    client.shutdown(socket.SHUT_RDWR)
                    return

    def close(self) -> None:
        self._listener.close()
