"""Security of the suite: certificates, callers and their roles, the server gates, channels.

- `certs`: a local CA, server and client certificates (`kinship certs`), and reading a
  caller's name, role and tenant back out of its certificate;
- `policy`: the roles and the one permission table (which role may call which RPC);
- `tokens`: signed bearer tokens (JWT) for callers without a client certificate;
- `gates`: the server interceptors (authenticate, authorise, purpose, limits, audit);
- `transport`: server and channel credentials from a TLS folder, and the plaintext rule;
- `forwarding`: what the ranker tells the services it calls about its own caller.
"""
