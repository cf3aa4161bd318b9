from smtpprobe.cli.app import entry

entry()
