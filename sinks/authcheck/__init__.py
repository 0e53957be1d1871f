"""What a provider checks of each message it receives: SPF, DKIM, DMARC and reverse DNS.

A sink whose config has `verify:` runs these checks between the end of DATA and its final
reply (sinks.handler), with every DNS lookup sent to the run's own DNS server and nowhere
else, journals the verdicts with the receipt, and with `enforce:` answers mail that fails
as that provider does (sinks.authcheck.enforce).
"""

from sinks.authcheck.lookup import Lookup, ServerLookup, TempDnsError, ZoneLookup
from sinks.authcheck.verdicts import AuthVerdicts, Verdict
from sinks.authcheck.verify import verify_message

__all__ = [
    "AuthVerdicts",
    "Lookup",
    "ServerLookup",
    "TempDnsError",
    "Verdict",
    "ZoneLookup",
    "verify_message",
]
