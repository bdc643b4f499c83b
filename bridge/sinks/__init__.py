"""Local sinks that speak each seed destination's documented contract strictly (auth, required fields, JSON
types, size and batch limits, rate limits answered with 429, Zenovay's bot filter, Elevar's debug answers).

`bridge demo` delivers to them, and the test suite uses them as the destinations' fakes. They run only on
127.0.0.1 (see `server.serve`).
"""
