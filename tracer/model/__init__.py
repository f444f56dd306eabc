"""Plain data shared by every layer: decoded records, the validated options, the verdict
vocabulary, typed errors and the sanitizer for untrusted text. No I/O, no bcc."""
