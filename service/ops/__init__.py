"""Operations endpoints: readiness, health, self metrics, reload, config dump."""
