//! The delivery's writes of a batch: acks of whole calls, the progress of a split call, the
//! platform's receipts and the batch's close (counts, reconciliation row, outbox bodies gone).

use super::*;

impl Db {
    /// Resolves the open error rows of these source rows that come from exchanges before the
    /// batch's own: a later, still invalid version keeps its error row open. Earlier rows of
    /// the batch's own exchange were marked superseded when it was committed.
    async fn resolve_errors(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        b: &BatchRow,
        keys: &[&str],
    ) -> Result<()> {
        // A batch from before migration 6 is older than every numbered exchange.
        let before = b.exchange_no.unwrap_or(0);
        // Bounded IN lists keep every backend under its bind-parameter limit.
        for chunk in keys.chunks(CHUNK_ROWS) {
            let q = resolve_errors_update(&now_text(), &b.cd_batch, job, before, chunk);
            self.stmt(&q).execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Marks whole calls delivered and, where the job has open error rows, resolves those of
    /// the same source rows found in earlier exchanges.
    pub async fn ack_calls(
        &self,
        fence: &Fence,
        b: &BatchRow,
        calls: &[&OutboxCall],
        resolve_errors: bool,
    ) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        retrying("ack_calls", || async {
            let mut tx = self.begin_fenced(fence).await?;
            self.ack_in(&mut tx, &fence.job, b, calls, resolve_errors)
                .await?;
            self.commit_write(tx, "ack_calls").await
        })
        .await
    }

    async fn ack_in(
        &self,
        tx: &mut Transaction<'_, Any>,
        job: &str,
        b: &BatchRow,
        calls: &[&OutboxCall],
        resolve_errors: bool,
    ) -> Result<()> {
        if calls.is_empty() {
            return Ok(());
        }
        self.stmt(&ack_update(&b.cd_batch, calls.iter().map(|c| c.call_no)))
            .execute(&mut **tx)
            .await?;
        if resolve_errors {
            let keys: Vec<&str> = calls
                .iter()
                .flat_map(|c| {
                    c.records
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| c.done.get(i) != Some(&'r'))
                        .map(|(_, m)| m.source_key.as_str())
                })
                .collect();
            self.resolve_errors(tx, job, b, &keys).await?;
        }
        Ok(())
    }

    /// Progress inside a split call: which records were acked or refused so far. Refused
    /// records become error rows carrying the platform's answer, in the same transaction.
    pub async fn record_split_progress(
        &self,
        fence: &Fence,
        b: &BatchRow,
        call: &OutboxCall,
        newly: &[usize],
        refused_message: Option<&str>,
        resolve_errors: bool,
    ) -> Result<()> {
        retrying("record_split_progress", || {
            self.record_split_progress_once(fence, b, call, newly, refused_message, resolve_errors)
        })
        .await
    }

    async fn record_split_progress_once(
        &self,
        fence: &Fence,
        b: &BatchRow,
        call: &OutboxCall,
        newly: &[usize],
        refused_message: Option<&str>,
        resolve_errors: bool,
    ) -> Result<()> {
        let job = fence.job.as_str();
        let mut tx = self.begin_fenced(fence).await?;
        let q = Query::update()
            .table("qz_outbox")
            .value("done", serde_json::to_string(&call.done)?)
            .and_where(Expr::col("cd_batch").eq(b.cd_batch.as_str()))
            .and_where(Expr::col("call_no").eq(call.call_no))
            .to_owned();
        self.stmt(&q).execute(&mut *tx).await?;
        match refused_message {
            Some(msg) => {
                let errors: Vec<ErrorRow> = newly
                    .iter()
                    .map(|i| {
                        let m = &call.records[*i];
                        ErrorRow {
                            source_key: m.source_key.clone(),
                            row_guid: Some(m.row_guid.clone()),
                            operation: Some(m.operation.clone()),
                            field: "*".into(),
                            rule: "platform_rejected".into(),
                            message: msg.to_string(),
                            superseded: false,
                        }
                    })
                    .collect();
                let at = (Some(b.cd_batch.as_str()), b.exchange_no);
                let mut w = Writes::new(self.backend);
                self.insert_errors(&mut w, job, &errors, at, &now_text());
                w.run(&mut tx).await?;
                let refused: Vec<(&str, &str)> = newly
                    .iter()
                    .map(|i| &call.records[*i])
                    .map(|m| (m.source_key.as_str(), m.operation.as_str()))
                    .collect();
                self.forget_refused(&mut tx, job, &refused).await?;
            }
            None if resolve_errors => {
                let keys: Vec<&str> = newly
                    .iter()
                    .map(|i| call.records[*i].source_key.as_str())
                    .collect();
                self.resolve_errors(&mut tx, job, b, &keys).await?;
            }
            None => {}
        }
        self.commit_write(tx, "record_split_progress").await
    }

    /// The platform's receipt for one accepted call (or part of a split call). Written on its
    /// own: the platform issued the number whether or not the ack below is recorded.
    pub async fn record_receipt(
        &self,
        fence: &Fence,
        cd_batch: &str,
        call_no: i64,
        records: usize,
        platform_batch_num: &str,
        platform_id: &str,
    ) -> Result<()> {
        let q = Query::insert()
            .into_table("qz_platform_receipt")
            .columns([
                "cd_batch",
                "call_no",
                "record_count",
                "platform_batch_num",
                "platform_id",
                "received_at",
            ])
            .values_panic([
                Expr::val(cd_batch),
                Expr::val(call_no),
                Expr::val(records as i64),
                Expr::val(platform_batch_num),
                Expr::val(platform_id),
                Expr::val(now_text()),
            ])
            .to_owned();
        retrying("record_receipt", || self.exec_fenced(fence, &q)).await
    }

    /// Closes a batch whose calls are all done: counts, the reconciliation row, and the
    /// outbox bodies are no longer needed.
    /// Closes a batch whose calls are all answered; `last_acks` are calls accepted since the
    /// last ack, recorded in the same transaction.
    pub async fn finish_batch(
        &self,
        fence: &Fence,
        b: &BatchRow,
        last_acks: &[&OutboxCall],
        resolve_errors: bool,
        upload_state: &str,
    ) -> Result<ReconRow> {
        retrying("finish_batch", || {
            self.finish_batch_once(fence, b, last_acks, resolve_errors, upload_state)
        })
        .await
    }

    async fn finish_batch_once(
        &self,
        fence: &Fence,
        b: &BatchRow,
        last_acks: &[&OutboxCall],
        resolve_errors: bool,
        upload_state: &str,
    ) -> Result<ReconRow> {
        let job = fence.job.as_str();
        let mut tx = self.begin_fenced(fence).await?;
        self.ack_in(&mut tx, job, b, last_acks, resolve_errors)
            .await?;
        let of_batch = || Expr::col("cd_batch").eq(b.cd_batch.as_str());
        let q = Query::select()
            .columns(["record_count", "done", "state"])
            .from("qz_outbox")
            .and_where(of_batch())
            .to_owned();
        let calls = self.stmt(&q).fetch_all(&mut *tx).await?;
        let (mut total, mut rejected, mut pending) = (0i64, 0i64, 0i64);
        for r in &calls {
            let n: i64 = r.try_get(0)?;
            total += n;
            if let Some(done) = r.try_get::<Option<String>, _>(1)? {
                let done: std::collections::BTreeMap<usize, char> = serde_json::from_str(&done)?;
                rejected += done.values().filter(|c| **c == 'r').count() as i64;
            }
            if r.try_get::<String, _>(2)? == "pending" {
                pending += 1;
            }
        }
        if pending > 0 {
            bail!("batch {} still has {pending} pending calls", b.cd_batch);
        }
        let acked = total - rejected;
        let now = now_text();
        // The platform's batch numbers (Gansu), in call order (answers to calls in flight
        // together come back in any order); none for Guangdong.
        let q = Query::select()
            .columns(["platform_batch_num", "platform_id"])
            .from("qz_platform_receipt")
            .and_where(of_batch())
            .order_by("call_no", Order::Asc)
            .order_by("id", Order::Asc)
            .to_owned();
        let receipts = self.stmt(&q).fetch_all(&mut *tx).await?;
        let mut nums: Vec<String> = Vec::new();
        let mut ids: Vec<String> = Vec::new();
        for r in &receipts {
            nums.push(r.try_get::<Option<String>, _>(0)?.unwrap_or_default());
            ids.push(r.try_get::<Option<String>, _>(1)?.unwrap_or_default());
        }
        let joined = |v: &[String]| (!v.is_empty()).then(|| v.join(","));
        let (platform_batch_num, platform_id) = (joined(&nums), joined(&ids));
        let q = batch_done_update(
            &b.cd_batch,
            acked,
            rejected,
            &now,
            platform_batch_num.clone(),
            platform_id,
        );
        // The closing writes are not read back: they go together (one hop through ODBC).
        let mut w = Writes::new(self.backend);
        w.push(&q);
        let recon = ReconRow {
            cd_batch: b.cd_batch.clone(),
            table_name: b.table_name.clone(),
            cd_count: acked,
            cd_time: b.cd_time.clone(),
        };
        w.push(&recon_insert(
            &recon,
            job,
            &now,
            upload_state,
            platform_batch_num,
        ));
        w.push(
            &Query::delete()
                .from_table("qz_outbox")
                .and_where(of_batch())
                .to_owned(),
        );
        w.run(&mut tx).await?;
        self.commit_write(tx, "finish_batch").await?;
        Ok(recon)
    }
}
