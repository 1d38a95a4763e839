// Starts dynalite (an in-memory DynamoDB API server) for the checkpoint-store tests, bound to
// 127.0.0.1 only (its CLI would listen on every interface).
//
//   node start.js [PORT]     PORT defaults to 0: the system picks a free port
//
// Prints the port it listens on as one line on stdout, then runs until its stdin closes, so a
// test process that dies (and so closes the pipe) never leaves a server behind.
'use strict'

const dynalite = require('dynalite')

const port = Number(process.argv[2] || 0)
const server = dynalite({
  // Table state changes take these many milliseconds (the defaults are 500).
  createTableMs: 20,
  deleteTableMs: 20,
  updateTableMs: 20,
})

server.on('error', (err) => {
  process.stderr.write(`dynalite: ${err.message}\n`)
  process.exit(1)
})

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`${server.address().port}\n`)
})

process.stdin.on('data', () => {})
process.stdin.on('end', () => process.exit(0))
process.stdin.on('error', () => process.exit(0))
process.stdin.resume()
