package store

// String names a status for logs and test failures.
func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusInsufficientFunds:
		return "insufficient_funds"
	case StatusUnknownAccount:
		return "unknown_account"
	case StatusUnknownOriginal:
		return "unknown_original"
	case StatusFingerprintMismatch:
		return "fingerprint_mismatch"
	case StatusInvalidAmount:
		return "invalid_amount"
	case StatusCurrencyMismatch:
		return "currency_mismatch"
	case StatusExceedsOriginal:
		return "exceeds_original"
	case StatusAlreadyFinal:
		return "already_final"
	case StatusAccountExists:
		return "account_exists"
	case StatusInvalidCommand:
		return "invalid_command"
	case StatusDuplicateReference:
		return "duplicate_reference"
	case StatusDayMismatch:
		return "day_mismatch"
	case StatusAuthenticationState:
		return "invalid_authentication_state"
	case StatusAuthenticationExpired:
		return "authentication_expired"
	case StatusTokenMismatch:
		return "token_mismatch"
	case StatusReversalWindowClosed:
		return "reversal_window_closed"
	}
	return "unknown_status"
}
