"""Local servers that play scripted roles for tests, demos and benchmarks (loopback only).

- `smtpprobe.lab.smtp`: SMTP servers playing named scenarios (`serve`, `SCENARIOS`,
  `run_forever` for `smtpprobe lab`), built on aiosmtpd inside the caller's event loop.
- `smtpprobe.lab.tls`: a throw-away certificate authority (`LabCA`) for those servers.
- `smtpprobe.lab.dns`: a small authoritative DNS server for test zones.

Nothing is imported here, so `import smtpprobe.lab` stays cheap; import the module you need.
"""
