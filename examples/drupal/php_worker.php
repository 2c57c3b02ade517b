<?php
// A PHP worker for jobs that gearctl submits: `gearctl client report_build -e php
// --data '{"rows": 3}'` arrives here as serialize() of the JSON, and the answer
// goes back as serialize(), which `gearctl client --wait --decode php` prints as JSON.
//
// php php_worker.php HOST:PORT
$worker = new GearmanWorker();
$worker->addServers($argv[1] ?? '127.0.0.1:4730');
$worker->addFunction('report_build', function (GearmanJob $job) {
  $data = unserialize($job->workload());
  if ($data === FALSE) {
    $job->sendException('report_build: the workload is not serialize() data');
    return '';
  }
  $rows = [];
  for ($i = 1; $i <= (int) ($data['rows'] ?? 0); $i++) {
    $rows[] = ['n' => $i, 'by' => $data['by'] ?? 'php'];
  }
  return serialize(['rows' => $rows, 'count' => count($rows), 'class' => is_object($data['account'] ?? NULL) ? get_class($data['account']) : NULL]);
});
while ($worker->work()) {
}
