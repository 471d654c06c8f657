-- Server-side limits. The SDK checks the same numbers first (bus/limits.py; a test keeps
-- the two equal) but only these are trusted.
local LIMIT_STATE_BYTES = 1048576
local LIMIT_PAYLOAD_BYTES = 262144
local LIMIT_PATCH_OPS = 256
local LIMIT_PATH_DEPTH = 32
local LIMIT_TITLE_BYTES = 1024
local LIMIT_TEXT_BYTES = 65536
local LIMIT_AGENTS = 64
local LIMIT_DEPENDS_ON = 256
local LIMIT_JSON_DEPTH = 64
local LIMIT_BATCH = 1000
local LIMIT_ATTACHMENT_BYTES = 1048576
local LIMIT_PORTFOLIO_MEMBERS = 1000
local LIMIT_PORTFOLIOS_PER_INTENT = 64
local LIMIT_PORTFOLIO_LINKS = 256
local LIMIT_PORTFOLIO_JSON_BYTES = 65536
