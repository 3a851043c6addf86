"""Where to connect: endpoint, model and API key, in one panel. Empty endpoint = phalanb's embedded simulator.

The key field is an ipywidgets ``Password``. Its text is moved into an :class:`~phalanb.wire.apikey.ApiKey` (whose repr
is redacted) as soon as it is entered, and the field is cleared, so the key is never kept in a widget value that a
saved notebook or a Voila page could echo. A key from ``$PHALANB_API_KEY`` / ``$REDPILL_API_KEY`` is never copied
into the panel at all: the panel only says that one is set.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import ipywidgets as W
import traitlets

from ..wire.apikey import ApiKey
from ..errors import PhalanbError
from ..session import Settings
from ._style import esc

__all__ = ["SettingsPanel"]


class SettingsPanel(W.VBox):
    """``SettingsPanel()`` reads the environment; ``panel.settings()`` gives the :class:`~phalanb.session.Settings`.

    ``version`` increases whenever a setting changes (a chat panel reconnects when it sees a new version).
    """

    version = traitlets.Int(0)
    key_source = traitlets.Unicode("", help="where the key comes from ('$PHALANB_API_KEY', 'typed') or ''")

    def __init__(self, environ: Mapping[str, str] | None = None, *, protocol: str = "aci", **kwargs: Any):
        env = dict(os.environ if environ is None else environ)
        self._protocol = protocol  # what the embedded simulator serves; a real service is recognised by its answer
        self._env_settings = Settings.from_env(env)
        self._key: ApiKey | None = self._env_settings.api_key
        self.endpoint = W.Text(value=self._env_settings.base_url or "", description="Endpoint",
                               placeholder="empty: phalanb's embedded simulator (no key, no network)",
                               layout=W.Layout(width="min(100%, 640px)"), continuous_update=False)
        self.model = W.Text(value=self._env_settings.model or "", description="Model",
                            placeholder="empty: the first model the service lists",
                            layout=W.Layout(width="min(100%, 640px)"), continuous_update=False)
        self.key = W.Password(value="", description="API key", placeholder="paste here, or set $PHALANB_API_KEY",
                              layout=W.Layout(width="min(100%, 640px)"))
        self.trust = W.Dropdown(options=[("automatic", ""), ("production roots", "production"),
                                         ("simulated roots", "simulated")],
                                value=self._env_settings.trust or "", description="Trust")
        self.status = W.HTML()
        for w in (self.endpoint, self.model, self.trust):
            w.observe(self._changed, names="value")
        self.key.observe(self._key_typed, names="value")
        super().__init__([self.endpoint, self.model, self.key, self.trust, self.status], **kwargs)
        self.key_source = self._key.source if self._key is not None else ""
        self._describe()

    # The key leaves the widget at once: only the ApiKey object keeps it.
    def _key_typed(self, change: dict) -> None:
        value = change["new"]
        if not value:
            return
        try:
            self._key = ApiKey(value, source="typed")
            self.key_source = "typed"
        except PhalanbError as exc:
            self.status.value = f"<span style='color:#cf222e'>{esc(exc)}</span>"
        finally:
            self.key.value = ""
        self._changed(None)

    def forget_key(self) -> None:
        """Drop the key (typed or from the environment) for this panel."""
        self._key = None
        self.key_source = ""
        self._changed(None)

    def _changed(self, _change: Any) -> None:
        self.version += 1
        self._describe()

    def settings(self, **overrides: Any) -> Settings:
        s = Settings(base_url=self.endpoint.value.strip() or None, model=self.model.value.strip() or None,
                     api_key=self._key, trust=self.trust.value or None,
                     signing_algo=self._env_settings.signing_algo, protocol=self._protocol)
        for k, v in overrides.items():
            setattr(s, k, v)
        return s

    def _describe(self) -> None:
        s = self.settings()
        if s.base_url is None:
            where = ("<b>phalanb's embedded simulator</b> on 127.0.0.1: no key, no network. Its roots are "
                     "<b>simulated</b>, so a pass shows the checks work, not that real hardware answered.")
        else:
            trust = s.trust or "production"
            where = f"<b>{esc(s.base_url)}</b> with {esc(trust)} roots"
        key = "no API key" if self._key is None else f"an API key from {esc(self._key.source)} (hidden)"
        self.status.value = f"<div style='margin:4px 0'>Using {where}; {key}.</div>"

    @property
    def has_key(self) -> bool:
        return self._key is not None

    def __repr__(self) -> str:
        return f"<SettingsPanel {self.settings().describe()}>"

