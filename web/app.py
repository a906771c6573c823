"""The status page and the JSON API: a Flask app factory. It never talks to hardware."""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify

from web.backend import Backend


def create_app(backend: Backend) -> Flask:
    app = Flask(__name__)
    app.config["BACKEND"] = backend

    @app.get("/healthz")
    def healthz() -> Any:
        return jsonify({"ok": True})

    @app.get("/api/v1/status")
    def status() -> Any:
        return jsonify(backend.snapshot())

    return app
