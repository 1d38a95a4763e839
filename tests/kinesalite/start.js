// Starts kinesalite (an in-memory Kinesis API server) for the kinesis-producer tests and
// benchmark, bound to 127.0.0.1 only (its CLI would listen on every interface).
//
//   node start.js [PORT]     PORT defaults to 0: the system picks a free port
//
// Prints the port it listens on as one line on stdout, then runs until its stdin closes, so a
// test process that dies (and so closes the pipe) never leaves a server behind.
'use strict'

const kinesalite = require('kinesalite')

const port = Number(process.argv[2] || 0)
const server = kinesalite({
  // Stream state changes take these many milliseconds (the defaults are 500).
  createStreamMs: 20,
  deleteStreamMs: 20,
  updateStreamMs: 20,
  shardLimit: 100,
})

server.on('error', (err) => {
  process.stderr.write(`kinesalite: ${err.message}\n`)
  process.exit(1)
})

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`)
})

process.stdin.on('data', () => {})
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
