-- Whether a grant was given after a Global Privacy Control signal had been recorded as the subject's refusal of
-- the purpose (CCPA regs 7025(c)(3)): the business may ask for consent after the conflict, and the consent given
-- then stands while the browser still sends the signal. One definition for live checks, replays and the GPC
-- recorder. Arguments: the subject, the purpose, when the grant was collected, and (NULL: any) the moment by
-- which the signal's record must have been received (a replay "as known").
CREATE FUNCTION granted_after_gpc_refusal(uuid, text, timestamptz, timestamptz) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT EXISTS (
        SELECT 1
        FROM consent_records cr
        JOIN consent_sources src ON src.source_id = cr.source_id
        WHERE cr.subject_id = $1 AND cr.purpose = $2 AND cr.collected_at < $3
          AND ($4 IS NULL OR cr.received_at <= $4)
          AND src.source ->> 'method' = 'gpc_signal'
    )
$$;
