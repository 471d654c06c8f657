"""The OpenIntent HTTP server (REST and SSE) and the dashboard: an ASGI application in front
of the bus. Stateless, so it scales by running more of it; every route calls the SDK's code
and scripts (``oibus.sdk``), never a second copy of a rule. Imports ``oibus.bus`` and
``oibus.sdk``; nothing here is imported by them."""
