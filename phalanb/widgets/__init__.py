"""Jupyter widgets for phalanb (ipywidgets 8; plain widgets and HTML, so JupyterLab 4 and Voila both show them).

The widgets only *show* what phalanb's public functions return: every check is computed by
:class:`~phalanb.session.Session` / :func:`~phalanb.vllm.verify.verify_exchange` and the parsers, never here.

>>> from phalanb.widgets import SettingsPanel, ChatPanel          # doctest: +SKIP
>>> settings = SettingsPanel()                                    # endpoint, model, key (a Password field)
>>> ChatPanel(settings)                                           # streams the reply, then the badges and chain

Model text is escaped with :func:`html.escape` before it reaches any HTML widget, and the API key is never put
into a widget's value that is echoed anywhere.
"""

from .badges import VerdictBadges
from .bytemap import ByteMapExplorer, QuoteExplorer, hex_view
from .chain import ACI_LINKS, LINKS, TrustChainView, chain_html, link_statuses
from .chat import ChatPanel
from .settings import SettingsPanel
from .table import Table, table
from .timing import TimingDashboard
from .window import WindowProbePanel

__all__ = [
    "WindowProbePanel",
           "LINKS",
           "ACI_LINKS",
           "ByteMapExplorer",
           "ChatPanel",
           "QuoteExplorer",
           "SettingsPanel",
           "TimingDashboard",
           "Table",
           "TrustChainView",
           "VerdictBadges",
           "chain_html",
           "hex_view",
           "link_statuses",
           "table",
]
