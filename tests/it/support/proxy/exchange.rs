//! One client connection: reading its requests, doing to each what the decider and the
//! tripwire say, forwarding it upstream and relaying the answer.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::FutureExt as _;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::*;

/// How an exchange left the client connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    KeepAlive,
    Close,
    /// Abort with a TCP RST.
    Reset,
}

/// The connection to the registry serving one client connection.
pub(super) struct Upstream {
    pub(super) r: BufReader<OwnedReadHalf>,
    pub(super) w: OwnedWriteHalf,
}

pub(super) async fn serve_connection(shared: Arc<Shared>, client: TcpStream) {
    let _ = client.set_nodelay(true);
    let (r, mut client_w) = client.into_split();
    let mut client_r = BufReader::new(r);
    let mut upstream: Option<Upstream> = None;
    let own = Directions::new(shared.per_connection);
    if starts_with_tls_handshake(&mut client_r).await {
        // As the registry (Go's net/http) does: answer at once, so a client probing for
        // HTTPS first (skopeo with --tls-verify=false) falls back to HTTP without waiting
        // for a timeout.
        let _ = client_w.write_all(HTTP_TO_HTTPS).await;
        return;
    }
    loop {
        let req = match read_head(&mut client_r, true).await {
            Ok(Some(lines)) => match RequestHead::parse(lines) {
                Some(req) => req,
                None => {
                    shared.malformed.fetch_add(1, Ordering::SeqCst);
                    let _ = client_w.write_all(&bad_request()).await;
                    return;
                }
            },
            // The client closed between requests, or sent garbage / went away.
            Ok(None) | Err(_) => return,
        };
        let (seq, action, latency, trip) = {
            let mut decider = shared.decider.lock().unwrap();
            let seq = decider.next;
            let mut action = decider.decide(&req.method, &req.target);
            if let (Some(max), Framing::Length(len)) = (decider.max_body(), req.framing)
                && len > max
            {
                action = Some(Action::status(413));
            }
            // Under the decider's lock, so that the tripwire counts in `seq` order.
            let trip = shared.tripped(seq, &req);
            (seq, action, decider.latency(), trip)
        };
        shared.in_flight.fetch_add(1, Ordering::SeqCst);
        let exchange = Exchange {
            shared: &shared,
            seq,
            req: &req,
            action: action.as_ref(),
            own: &own,
            trip,
        };
        let end = exchange
            .run(latency, &mut client_r, &mut client_w, &mut upstream)
            .await;
        shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        match end {
            End::KeepAlive => continue,
            End::Close => return,
            End::Reset => {
                reset(client_r, client_w);
                return;
            }
        }
    }
}

/// The answer of Go's net/http to a TLS ClientHello on a plain HTTP port.
pub(super) const HTTP_TO_HTTPS: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// Whether the client opened with a TLS handshake record (content type 22) instead of a
/// request line.
pub(super) async fn starts_with_tls_handshake(client_r: &mut BufReader<OwnedReadHalf>) -> bool {
    matches!(client_r.fill_buf().await, Ok([0x16, ..]))
}

/// Aborts the connection: RST instead of FIN, and no shutdown of the write half first
/// (dropping an `OwnedWriteHalf` would send a FIN, which a client reads as a clean end).
pub(super) fn reset(client_r: BufReader<OwnedReadHalf>, client_w: OwnedWriteHalf) {
    if let Ok(stream) = client_r.into_inner().reunite(client_w) {
        let _ = stream.set_zero_linger();
        drop(stream);
    }
}

/// One request and what is done to it.
pub(super) struct Exchange<'a> {
    pub(super) shared: &'a Shared,
    pub(super) seq: u64,
    pub(super) req: &'a RequestHead,
    pub(super) action: Option<&'a Action>,
    /// This connection's own bandwidth limits.
    pub(super) own: &'a Directions,
    /// What a tripwire does to this request, if it caught it.
    pub(super) trip: Option<Tripped>,
}

impl Exchange<'_> {
    pub(super) async fn run(
        &self,
        latency: Duration,
        client_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
        upstream: &mut Option<Upstream>,
    ) -> End {
        if let Some(tripped) = &self.trip {
            let forwarded = !matches!(
                self.action,
                Some(Action::Status { .. } | Action::ResetBeforeForward)
            );
            match tripped.trip {
                Trip::Pass => {
                    let _ = tripped.tell.send(tripped.caught.clone());
                }
                Trip::AfterUpstream if forwarded => {}
                Trip::BeforeForward | Trip::AfterUpstream => self.hold().await,
            }
        }
        let delay = match self.action {
            Some(Action::Delay(extra)) => latency.saturating_add(*extra),
            _ => latency,
        };
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        match self.action {
            Some(Action::Status { code, retry_after }) => {
                self.answer_status(*code, retry_after.as_ref(), client_r, client_w)
                    .await
            }
            Some(Action::ResetBeforeForward) => {
                self.record(None, None);
                End::Reset
            }
            _ => {
                let end = self.forward(client_r, client_w, upstream).await;
                if end != End::KeepAlive {
                    // Its state is unknown (a body half read, a cut answer): start afresh.
                    *upstream = None;
                }
                end
            }
        }
    }

    /// Holds this request (a tripwire caught it): no longer in flight, and said on
    /// the tripwire's channel; until [`Proxy::release_held`], for good if that never
    /// comes.
    pub(super) async fn hold(&self) {
        // Before it is said: a release that follows the telling is for this request.
        let mut released = self.shared.released.subscribe();
        let held_at = *released.borrow_and_update();
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
        if let Some(tripped) = &self.trip {
            let _ = tripped.tell.send(tripped.caught.clone());
        }
        if released.wait_for(|n| *n > held_at).await.is_err() {
            std::future::pending::<()>().await;
        }
        self.shared.in_flight.fetch_add(1, Ordering::SeqCst);
    }

    pub(super) fn record(&self, upstream_status: Option<u16>, error: Option<String>) {
        self.shared.log.lock().unwrap().push(ProxyEvent {
            seq: self.seq,
            method: self.req.method.clone(),
            target: self.req.target.clone(),
            upstream_status,
            fault: self.action.cloned(),
            error,
        });
    }

    /// The proxy's own answer, the request not forwarded.
    pub(super) async fn answer_status(
        &self,
        code: u16,
        retry_after: Option<&RetryAfter>,
        client_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
    ) -> End {
        // A client waiting for "100 Continue" sends no body: the connection's state is
        // then unclear, close it after the answer. Otherwise read the body away so the
        // next request on the connection is parsed from its start.
        // nginx closes the connection after refusing a body as too large.
        let keep = !self.req.expect_continue && !self.req.close && code != 413;
        if !self.req.expect_continue
            && copy_body(client_r, &mut Discard, self.req.framing, false)
                .await
                .is_err()
        {
            return End::Close;
        }
        self.record(None, None);
        let mut answer = status_answer(code, retry_after, !keep);
        if self.req.method.eq_ignore_ascii_case("HEAD") {
            // Same head, no body: a body here would be read as the next answer.
            answer.truncate(head_len(&answer));
        }
        if client_w.write_all(&answer).await.is_err() {
            return End::Close;
        }
        if keep { End::KeepAlive } else { End::Close }
    }

    /// Forwards the request and relays the answer, applying the forwarding actions.
    pub(super) async fn forward(
        &self,
        client_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
        upstream: &mut Option<Upstream>,
    ) -> End {
        let up = match self.connect(upstream).await {
            Ok(up) => up,
            Err(e) => return self.fail(client_w, format!("connect: {e}")).await,
        };
        let head = match self.action {
            Some(Action::DropHeader(name)) => without_header(&self.req.raw, name),
            _ => self.req.raw.clone(),
        };
        if let Err(e) = up.w.write_all(&head).await {
            return self.fail(client_w, format!("send request head: {e}")).await;
        }
        // The request body is sent while the answer is awaited: the registry may answer
        // before reading it all (an error), and a client sending `Expect: 100-continue`
        // waits for the registry's "100 Continue" before sending it.
        let (up_r, up_w) = (&mut up.r, &mut up.w);
        let mut up_w = Paced {
            sink: up_w,
            link: Link([self.own.up.as_ref(), self.shared.total.up.as_ref()]),
        };
        let body = async {
            let sent = copy_body(client_r, &mut up_w, self.req.framing, false).await;
            if sent.is_err() {
                // The client went away mid-body (killed): end the body upstream
                // too, or the registry would wait for the rest of it for ever.
                let _ = up_w.sink.shutdown().await;
            }
            sent
        };
        let answer = self.relay_answer(up_r, client_w);
        tokio::pin!(body, answer);
        let mut body_sent = None;
        let end = loop {
            tokio::select! {
                sent = &mut body, if body_sent.is_none() => body_sent = Some(sent.is_ok()),
                end = &mut answer => break end,
            }
        };
        // The answer came before the client sent its whole body (an early error, or no
        // "100 Continue"): the rest of the body would be read as the next request.
        let body_sent = body_sent.or_else(|| body.now_or_never().map(|sent| sent.is_ok()));
        if end == End::KeepAlive && body_sent != Some(true) {
            End::Close
        } else {
            end
        }
    }

    /// The upstream connection, reused when the registry has not closed it.
    pub(super) async fn connect<'u>(
        &self,
        upstream: &'u mut Option<Upstream>,
    ) -> io::Result<&'u mut Upstream> {
        if upstream.as_mut().is_some_and(|up| !is_idle(&mut up.r)) {
            *upstream = None;
        }
        if upstream.is_none() {
            let stream = TcpStream::connect(&self.shared.upstream).await?;
            let _ = stream.set_nodelay(true);
            let (r, w) = stream.into_split();
            *upstream = Some(Upstream {
                r: BufReader::new(r),
                w,
            });
        }
        Ok(upstream.as_mut().expect("just connected"))
    }

    /// Records a proxy failure and answers 502.
    pub(super) async fn fail(&self, client_w: &mut OwnedWriteHalf, error: String) -> End {
        self.record(None, Some(error));
        let _ = client_w.write_all(&status_answer(502, None, true)).await;
        End::Close
    }

    /// Reads the registry's answer and relays it, as the action says.
    pub(super) async fn relay_answer(
        &self,
        up_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
    ) -> End {
        let head = match self.read_final_head(up_r, client_w).await {
            Ok(head) => head,
            Err(e) => return self.fail(client_w, format!("read answer: {e}")).await,
        };
        self.record(Some(head.status), None);
        if self
            .trip
            .as_ref()
            .is_some_and(|t| t.trip == Trip::AfterUpstream)
        {
            self.hold().await;
        }
        match self.action {
            Some(Action::ResetAfterUpstream) => return End::Reset,
            Some(Action::Stall(hold)) => tokio::time::sleep(*hold).await,
            _ => {}
        }
        let framing = head.framing(&self.req.method);
        let raw = head.rewritten(&self.shared.upstream, &self.shared.authority);
        let mut out = AnswerWriter {
            w: client_w,
            budget: match self.action {
                Some(Action::CutAnswer { bytes }) => Some(*bytes),
                _ => None,
            },
            trickle: match self.action {
                Some(Action::Trickle { bytes_per_sec }) => Some((*bytes_per_sec).max(1)),
                _ => None,
            },
            link: Link([self.own.down.as_ref(), self.shared.total.down.as_ref()]),
            in_body: false,
        };
        let whole = match out.put(&raw, framing == Framing::Empty).await {
            Ok(true) => {
                out.in_body = true;
                copy_body(up_r, &mut out, framing, true).await
            }
            other => other,
        };
        match whole {
            Ok(true) if !self.req.close && !head.close && framing != Framing::UntilClose => {
                End::KeepAlive
            }
            // Cut, finished by closing, or broken: close (with a FIN, so a cut answer
            // reads as a premature end, not as a reset).
            _ => {
                let _ = client_w.shutdown().await;
                End::Close
            }
        }
    }

    /// The final (non-1xx) answer head; interim answers ("100 Continue") are relayed.
    pub(super) async fn read_final_head(
        &self,
        up_r: &mut BufReader<OwnedReadHalf>,
        client_w: &mut OwnedWriteHalf,
    ) -> io::Result<ResponseHead> {
        loop {
            let lines = read_head(up_r, false)
                .await?
                .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "no answer"))?;
            let head = ResponseHead::parse(lines)
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad status line"))?;
            if (100..200).contains(&head.status) && head.status != 101 {
                client_w.write_all(&head.raw()).await?;
                continue;
            }
            return Ok(head);
        }
    }
}

/// True when nothing came from the registry on an idle connection: neither data nor its
/// close (a registry closing idle connections must not cost a request a 502).
pub(super) fn is_idle(r: &mut BufReader<OwnedReadHalf>) -> bool {
    r.fill_buf().now_or_never().is_none()
}
