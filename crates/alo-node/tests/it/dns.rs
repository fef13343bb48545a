//! A DNS server for the tests, on 127.0.0.1 over UDP and TCP: it answers A and SRV queries
//! from a table the test changes while it runs, or fails every query while told to.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError};

use hickory_resolver::proto::op::{Message, MessageType, ResponseCode};
use hickory_resolver::proto::rr::rdata::{A, SRV};
use hickory_resolver::proto::rr::{Name, RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::{oneshot, watch};

/// What the server answers.
#[derive(Clone, Debug, Default)]
struct Table {
    /// A records by name (`n1.cluster.test.`); a name with none is known and empty.
    a: HashMap<String, Vec<Ipv4Addr>>,
    /// SRV records by name: each a target name and a port.
    srv: HashMap<String, Vec<(String, u16)>>,
    /// Answer every query with SERVFAIL.
    failing: bool,
}

/// The server; it stops when dropped.
pub(crate) struct DnsServer {
    /// Where it listens, UDP and TCP: `--peers-dns-server`.
    pub(crate) addr: SocketAddr,
    table: Arc<Mutex<Table>>,
    /// SRV queries answered so far.
    srv_queries: watch::Receiver<u64>,
    _stop: oneshot::Sender<()>,
}

impl DnsServer {
    pub(crate) async fn start() -> DnsServer {
        // UDP first, then TCP on the same port number (taken by someone else, once in a
        // while: then another port).
        let (udp, tcp) = loop {
            let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind UDP");
            let addr = udp.local_addr().expect("bound");
            if let Ok(tcp) = TcpListener::bind(addr).await {
                break (udp, tcp);
            }
        };
        let addr = udp.local_addr().expect("bound");
        let table = Arc::new(Mutex::new(Table::default()));
        let (counted, srv_queries) = watch::channel(0);
        let counted = Arc::new(counted);
        let (stop, stopped) = oneshot::channel::<()>();
        let (udp_table, tcp_table) = (Arc::clone(&table), Arc::clone(&table));
        let udp_counted = Arc::clone(&counted);
        let serve = async move {
            let udp = async {
                let mut buffer = vec![0; 4096];
                loop {
                    let Ok((n, from)) = udp.recv_from(&mut buffer).await else {
                        continue;
                    };
                    if let Some(answer) = answer(&buffer[..n], &udp_table, &udp_counted) {
                        let _ = udp.send_to(&answer, from).await;
                    }
                }
            };
            let tcp = async {
                loop {
                    let Ok((mut stream, _)) = tcp.accept().await else {
                        continue;
                    };
                    let (table, counted) = (Arc::clone(&tcp_table), Arc::clone(&counted));
                    tokio::spawn(async move {
                        // Each message is preceded by its length in two bytes.
                        while let Ok(len) = stream.read_u16().await {
                            let mut query = vec![0; usize::from(len)];
                            if stream.read_exact(&mut query).await.is_err() {
                                return;
                            }
                            let Some(answer) = answer(&query, &table, &counted) else {
                                return;
                            };
                            let len = u16::try_from(answer.len()).expect("a small answer");
                            let mut framed = len.to_be_bytes().to_vec();
                            framed.extend_from_slice(&answer);
                            if stream.write_all(&framed).await.is_err() {
                                return;
                            }
                        }
                    });
                }
            };
            tokio::select! {
                () = udp => {}
                () = tcp => {}
                _ = stopped => {}
            }
        };
        tokio::spawn(serve);
        DnsServer {
            addr,
            table,
            srv_queries,
            _stop: stop,
        }
    }

    fn change(&self, change: impl FnOnce(&mut Table)) {
        change(&mut self.table.lock().unwrap_or_else(PoisonError::into_inner));
    }

    /// Sets the A records of `name`.
    pub(crate) fn set_a(&self, name: &str, addresses: &[Ipv4Addr]) {
        self.change(|t| {
            t.a.insert(fqdn(name), addresses.to_vec());
        });
    }

    /// Sets the SRV records of `name`, each a target name and a port, and an A record of
    /// 127.0.0.1 for each target.
    pub(crate) fn set_srv(&self, name: &str, targets: &[(&str, u16)]) {
        self.change(|t| {
            let records = targets.iter().map(|(target, port)| (fqdn(target), *port));
            t.srv.insert(fqdn(name), records.collect());
            for (target, _) in targets {
                t.a.insert(fqdn(target), vec![Ipv4Addr::LOCALHOST]);
            }
        });
    }

    /// Answers SERVFAIL to everything while `failing`.
    pub(crate) fn set_failing(&self, failing: bool) {
        self.change(|t| t.failing = failing);
    }

    /// SRV queries answered so far.
    pub(crate) fn srv_queries(&self) -> u64 {
        *self.srv_queries.borrow()
    }

    /// Waits until `n` SRV queries in all have been answered.
    pub(crate) async fn wait_for_srv_queries(&self, n: u64) {
        let mut answered = self.srv_queries.clone();
        answered
            .wait_for(|answered| *answered >= n)
            .await
            .expect("the server runs");
    }
}

/// `name` with the final dot, lowercase, as the table keys it.
fn fqdn(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    if name.ends_with('.') {
        name
    } else {
        format!("{name}.")
    }
}

/// The answer to one query message, from the table; `None` for a message that is not one.
/// The table is read and the SRV count raised under one lock, so a query counted after a
/// change of the table saw the change.
fn answer(query: &[u8], table: &Mutex<Table>, srv_queries: &watch::Sender<u64>) -> Option<Vec<u8>> {
    let query = Message::from_vec(query).ok()?;
    let question = query.queries.first()?.clone();
    let table = table.lock().unwrap_or_else(PoisonError::into_inner);
    let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
    answer.metadata.message_type = MessageType::Response;
    answer.metadata.recursion_desired = query.metadata.recursion_desired;
    answer.metadata.authoritative = true;
    answer.add_query(question.clone());
    let name = fqdn(&question.name().to_ascii());
    let owner = question.name().clone();
    let record = |data| Record::from_rdata(owner.clone(), 0, data);
    let known = table.a.contains_key(&name) || table.srv.contains_key(&name);
    answer.metadata.response_code = if table.failing {
        ResponseCode::ServFail
    } else if !known {
        ResponseCode::NXDomain
    } else {
        match question.query_type() {
            RecordType::A => {
                for ip in table.a.get(&name).into_iter().flatten() {
                    answer.add_answer(record(RData::A(A(*ip))));
                }
            }
            RecordType::SRV => {
                for (target, port) in table.srv.get(&name).into_iter().flatten() {
                    let target = Name::from_ascii(target).expect("a name");
                    answer.add_answer(record(RData::SRV(SRV::new(0, 0, *port, target))));
                }
            }
            _ => {}
        }
        ResponseCode::NoError
    };
    if question.query_type() == RecordType::SRV {
        srv_queries.send_modify(|n| *n += 1);
    }
    answer.to_vec().ok()
}
