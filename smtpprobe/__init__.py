"""smtpprobe: a live SMTP connection tester that explains what mail servers say."""

__version__ = "0.1.0"
