//! A real OpenLDAP server (`slapd` from Debian's packages) in a temporary
//! directory, with its own slapd.conf, seeded over LDAP with `ldapadd` so
//! the memberof overlay maintains `memberOf` as it would in production.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const SUFFIX: &str = "dc=example,dc=test";
pub const ROOT_DN: &str = "cn=admin,dc=example,dc=test";
pub const ROOT_PASSWORD: &str = "admin-secret";
pub const SERVICE_DN: &str = "cn=svc-collab,ou=services,dc=example,dc=test";
pub const SERVICE_PASSWORD: &str = "service-secret";

/// The directory's people and groups. Only `alice` begins with "a", so an
/// unescaped `a*` in a filter would find exactly her.
const SEED: &str = "\
dn: dc=example,dc=test
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,dc=example,dc=test
objectClass: organizationalUnit
ou: people

dn: ou=groups,dc=example,dc=test
objectClass: organizationalUnit
ou: groups

dn: ou=services,dc=example,dc=test
objectClass: organizationalUnit
ou: services

dn: cn=svc-collab,ou=services,dc=example,dc=test
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: svc-collab
userPassword: service-secret

dn: uid=alice,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: alice
cn: Alice Admin
sn: Admin
mail: alice@example.test
userPassword: alice-password

dn: uid=bob,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: bob
cn: Bob Builder
sn: Builder
mail: bob@example.test
userPassword: bob-password

dn: uid=carol,ou=people,dc=example,dc=test
objectClass: inetOrgPerson
uid: carol
cn: Carol Nogroups
sn: Nogroups
userPassword: carol-password

dn: cn=eng-admins,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: eng-admins
member: uid=alice,ou=people,dc=example,dc=test

dn: cn=staff,ou=groups,dc=example,dc=test
objectClass: groupOfNames
cn: staff
member: uid=alice,ou=people,dc=example,dc=test
member: uid=bob,ou=people,dc=example,dc=test
";

/// A running slapd; stopped by its PID when dropped, its directory removed.
pub struct Slapd {
    child: Child,
    /// `ldap://127.0.0.1:<port>` (StartTLS offered when started with TLS).
    pub url: String,
    /// `ldaps://127.0.0.1:<port>`, when started with TLS.
    pub ldaps_url: Option<String>,
    /// PEM file of the CA that signed the server's certificate, when
    /// started with TLS.
    pub ca_file: Option<PathBuf>,
    dir: tempfile::TempDir,
}

fn find_slapd() -> PathBuf {
    for candidate in [
        "/usr/sbin/slapd",
        "/usr/local/sbin/slapd",
        "/usr/local/libexec/slapd",
    ] {
        if Path::new(candidate).exists() {
            return candidate.into();
        }
    }
    panic!(
        "slapd is missing: the LDAP tests need OpenLDAP's server (Debian packages `slapd` and `ldap-utils`; scripts/deps.sh installs them)"
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Slapd {
    /// Starts slapd on 127.0.0.1 with a random port and seeds the directory.
    /// Blocking (process start-up and seeding); call it before the test's
    /// async work or from `spawn_blocking`.
    pub fn start() -> Self {
        Self::launch(false)
    }

    /// Like [`start`](Self::start), with a certificate for 127.0.0.1 from a
    /// CA made for the occasion (with the `openssl` command), serving
    /// StartTLS on `url` and TLS on `ldaps_url`.
    pub fn start_with_tls() -> Self {
        Self::launch(true)
    }

    fn launch(tls: bool) -> Self {
        // A port picked free can be taken by another test's server before
        // slapd binds it; then seeding cannot reach it. Start afresh on a
        // new port (bounded), and fail with the last error.
        let mut last = String::new();
        for _attempt in 0..3 {
            let mut server = Self::launch_once(tls);
            match server.seed() {
                Ok(()) => return server,
                Err(error) => {
                    last = error;
                    let _ = server.child.kill();
                    let _ = server.child.wait();
                }
            }
        }
        panic!("{last}");
    }

    fn launch_once(tls: bool) -> Self {
        let slapd = find_slapd();
        let dir = tempfile::tempdir().expect("temp dir for slapd");
        let data = dir.path().join("data");
        std::fs::create_dir(&data).expect("slapd data dir");
        let tls_config = if tls {
            make_certificates(dir.path());
            format!(
                "TLSCACertificateFile {d}/ca.pem\nTLSCertificateFile {d}/server.pem\nTLSCertificateKeyFile {d}/server.key\n",
                d = dir.path().display()
            )
        } else {
            String::new()
        };
        let config = format!(
            r#"{tls_config}include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
pidfile {dir}/slapd.pid
argsfile {dir}/slapd.args
database mdb
maxsize 10485760
suffix "{SUFFIX}"
rootdn "{ROOT_DN}"
rootpw {ROOT_PASSWORD}
directory {data}
overlay memberof
access to attrs=userPassword by self =w by anonymous auth by * none
access to * by users read by * none
"#,
            dir = dir.path().display(),
            data = data.display(),
        );
        let conf = dir.path().join("slapd.conf");
        std::fs::write(&conf, config).expect("write slapd.conf");
        let log = std::fs::File::create(dir.path().join("slapd.log")).expect("slapd log");

        let port = free_port();
        let url = format!("ldap://127.0.0.1:{port}");
        let ldaps_port = tls.then(free_port);
        let ldaps_url = ldaps_port.map(|p| format!("ldaps://127.0.0.1:{p}"));
        let listen = match &ldaps_url {
            Some(ldaps) => format!("{url}/ {ldaps}/"),
            None => format!("{url}/"),
        };
        // `-d 0`: stay in the foreground (no fork), so the PID we hold is
        // slapd's own and killing it stops the server.
        let child = Command::new(&slapd)
            .arg("-f")
            .arg(&conf)
            .arg("-h")
            .arg(listen)
            .args(["-d", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|err| panic!("cannot start {} ({err})", slapd.display()));
        let ca_file = tls.then(|| dir.path().join("ca.pem"));
        let mut server = Self {
            child,
            url,
            ldaps_url,
            ca_file,
            dir,
        };
        server.wait_until_listening(port);
        if let Some(p) = ldaps_port {
            server.wait_until_listening(p);
        }
        server
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("slapd.log")).unwrap_or_default()
    }

    fn wait_until_listening(&mut self, port: u16) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("slapd exited at start ({status}):\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "slapd did not listen on port {port} within 20 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn seed(&self) -> Result<(), String> {
        let ldif = self.dir.path().join("seed.ldif");
        std::fs::write(&ldif, SEED).expect("write seed.ldif");
        let output = Command::new("ldapadd")
            .args(["-x", "-H", &self.url, "-D", ROOT_DN, "-w", ROOT_PASSWORD, "-f"])
            .arg(&ldif)
            .output()
            .unwrap_or_else(|err| {
                panic!("cannot run ldapadd ({err}): the LDAP tests need the Debian package `ldap-utils` (scripts/deps.sh installs it)")
            });
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "seeding the directory with ldapadd failed ({}):\n{}\nslapd log:\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr),
                self.log()
            ))
        }
    }
}

/// A CA and a server certificate for 127.0.0.1 (IP SAN) in `dir`.
fn make_certificates(dir: &Path) {
    let openssl = |args: &[&str]| {
        let output = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap_or_else(|err| {
                panic!("cannot run openssl ({err}): the LDAP TLS tests make their certificates with it (Debian package `openssl`)")
            });
        assert!(
            output.status.success(),
            "openssl {args:?} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=connectors test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write server.ext");
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
}

impl Drop for Slapd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
