from smtpprobe.cli.startup import entry

entry()
