// What tests/kinesalite/start.js and tests/dynalite/start.js share: listen on 127.0.0.1 only
// (the servers' own CLIs would listen on every interface), print the port as one line on
// stdout, and run until stdin closes, so a test process that dies (and so closes the pipe)
// never leaves a server behind. The reader is tests/support/node_server.rs.
'use strict'

/** Serves `server` (an http.Server) on 127.0.0.1:`port`; `name` prefixes its errors. */
function serveOnLoopback (name, server, port) {
  server.on('error', (err) => {
    process.stderr.write(`${name}: ${err.message}\n`)
    process.exit(1)
  })

  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`${server.address().port}\n`)
  })

  process.stdin.on('data', () => {})
  process.stdin.on('end', () => process.exit(0))
  process.stdin.on('error', () => process.exit(0))
  process.stdin.resume()
}

module.exports = { serveOnLoopback }
