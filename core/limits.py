"""The service's limits on ids, lengths and batches: the one home of each (DESIGN.md)."""

MAX_ID = 2**63 - 1  # BIGINT: a larger id can name nothing, and must not reach the database
MAX_COUNT = 2**31 - 1  # the INTEGER columns of the redemption limits
# Identifiers, till, bill id and bill number (DESIGN.md, Rows): a longer one could never match.
MAX_IDENTIFIER = 100
MAX_DETAILS = 1_000  # an upload's details, a row's details, a customer's name
MAX_BATCH = 10_000  # items in one reference-data request
MAX_PAGE = 500  # items in one page of a list (jobs, series)
